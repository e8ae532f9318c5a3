-- Cruddur schema, version 1. Portable SQL (SQLite and PostgreSQL): text uuids, ISO 8601 UTC text
-- timestamps of a fixed width (text order is time order on both databases).
-- IF NOT EXISTS throughout: a SQLite database created before migrations existed (the same tables
-- plus schema_meta, from the hand-written schema) adopts this version without a change.
CREATE TABLE IF NOT EXISTS users (
  uuid TEXT PRIMARY KEY,
  handle TEXT NOT NULL UNIQUE,
  display_name TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS activities (
  uuid TEXT PRIMARY KEY,
  user_uuid TEXT NOT NULL REFERENCES users (uuid),
  message TEXT NOT NULL,
  reply_to_activity_uuid TEXT REFERENCES activities (uuid),
  likes_count INTEGER NOT NULL DEFAULT 0,
  replies_count INTEGER NOT NULL DEFAULT 0,
  reposts_count INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activities_created_at ON activities (created_at);
CREATE INDEX IF NOT EXISTS activities_user ON activities (user_uuid, created_at);
CREATE INDEX IF NOT EXISTS activities_reply_to ON activities (reply_to_activity_uuid, created_at);

CREATE TABLE IF NOT EXISTS message_groups (
  uuid TEXT PRIMARY KEY,
  -- the pair of members, lower uuid first, so a pair has one group
  user_a_uuid TEXT NOT NULL REFERENCES users (uuid),
  user_b_uuid TEXT NOT NULL REFERENCES users (uuid),
  created_at TEXT NOT NULL,
  UNIQUE (user_a_uuid, user_b_uuid)
);

CREATE TABLE IF NOT EXISTS messages (
  uuid TEXT PRIMARY KEY,
  message_group_uuid TEXT NOT NULL REFERENCES message_groups (uuid),
  user_uuid TEXT NOT NULL REFERENCES users (uuid),
  message TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_group ON messages (message_group_uuid, created_at);

CREATE TABLE IF NOT EXISTS schema_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
