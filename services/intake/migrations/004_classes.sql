-- Problem classes (一个诉求解决一类问题): whistles of one category at one building or grid within a
-- window; raised_at / proactive_whistle_id are set once, when the class raises its proactive whistle.
CREATE TABLE IF NOT EXISTS problem_classes (
    id                   uuid PRIMARY KEY,
    category             text        NOT NULL,
    building             text        NOT NULL,
    grid                 text,
    first_whistle_id     uuid        NOT NULL REFERENCES whistles (id),
    size                 integer     NOT NULL,
    first_seen           timestamptz NOT NULL,
    last_seen            timestamptz NOT NULL,
    proactive_whistle_id uuid REFERENCES whistles (id),
    raised_at            timestamptz
);
CREATE INDEX IF NOT EXISTS problem_classes_building ON problem_classes (category, building, last_seen);
CREATE INDEX IF NOT EXISTS problem_classes_grid ON problem_classes (category, grid, last_seen) WHERE grid IS NOT NULL;
-- every complainant stays attached through their whistle (the reporter is kept on the whistle)
CREATE TABLE IF NOT EXISTS class_members (
    class_id   uuid        NOT NULL REFERENCES problem_classes (id),
    whistle_id uuid        NOT NULL REFERENCES whistles (id),
    joined_at  timestamptz NOT NULL,
    PRIMARY KEY (class_id, whistle_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS class_members_whistle ON class_members (whistle_id);
