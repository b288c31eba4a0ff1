"""The `whistle` command: run the system (`whistle up`) and thin clients of the HTTP API."""
