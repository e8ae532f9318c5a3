-- Cruddur schema, version 2: the Cognito user (the access token's `sub`) who signs in as each user.
-- NULL for a user who never signed in; one Cognito user is one Cruddur user (NULLs may repeat).
ALTER TABLE users ADD COLUMN cognito_user_id TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_cognito_user_id ON users (cognito_user_id);
