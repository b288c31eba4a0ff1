#!/usr/bin/env bash
# Re-fetch the console's vendored front-end at the pinned versions (npm pack: the published tarballs, no build).
set -euo pipefail
HTMX=2.0.11
HTMX_SSE=2.2.4
ECHARTS=5.6.0  # its zh-CN locale (ZH) is built into dist/echarts.min.js
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX" "htmx-ext-sse@$HTMX_SSE" "echarts@$ECHARTS" >/dev/null
mkdir htmx sse echarts
tar -xzf "htmx.org-$HTMX.tgz" -C htmx
tar -xzf "htmx-ext-sse-$HTMX_SSE.tgz" -C sse
tar -xzf "echarts-$ECHARTS.tgz" -C echarts
cp htmx/package/dist/htmx.min.js "$here/htmx.min.js"
cp htmx/package/LICENSE "$here/htmx.LICENSE"
cp sse/package/dist/sse.min.js "$here/htmx-ext-sse.min.js" 2>/dev/null || cp sse/package/sse.js "$here/htmx-ext-sse.min.js"
cp sse/package/LICENSE "$here/htmx-ext-sse.LICENSE" 2>/dev/null || cp htmx/package/LICENSE "$here/htmx-ext-sse.LICENSE"
cp echarts/package/dist/echarts.min.js "$here/echarts.min.js"
cp echarts/package/LICENSE "$here/echarts.LICENSE"
cp echarts/package/NOTICE "$here/echarts.NOTICE"
printf 'htmx.org %s\nhtmx-ext-sse %s\necharts %s\n' "$HTMX" "$HTMX_SSE" "$ECHARTS" > "$here/VERSIONS"
echo "vendored htmx.org@$HTMX, htmx-ext-sse@$HTMX_SSE and echarts@$ECHARTS into $here"
