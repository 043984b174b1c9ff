-- 0005: the login guard's state (package loginguard keeps the policy).
--
-- One row per thing whose failed logins are counted, shared by every bmgate
-- process on the database and shown by `bmgate login-guard list`:
--
--   kind 'ip'    a client address (an IPv6 client by its /64); name is ''.
--   kind 'user'  an account name, lower case, whether or not the account
--                exists; ip is ''. busy_until reserves the account for the
--                one password check in progress, so checks against one
--                account never run in parallel.
--   kind 'pair'  an account and an address it logged in from (ok_at, the
--                last success): while known, logins for that account from
--                that address skip the account's and the address's lock and
--                count their failures here instead, so an attacker who
--                locks an account does not lock out its owner.
--
-- failures counts failures since the count was last forgotten (last_at is
-- the last failure, or when the row was made); next_at is the time before
-- which no login is admitted. Times are unix microseconds. The table is
-- pruned: rows whose failures are old, and then the oldest rows over a
-- bound (loginguard.Config.MaxEntries).

CREATE TABLE login_guard (
    kind       TEXT    NOT NULL CHECK (kind IN ('ip', 'user', 'pair')),
    name       TEXT    NOT NULL DEFAULT '',
    ip         TEXT    NOT NULL DEFAULT '',
    failures   INTEGER NOT NULL DEFAULT 0,
    last_at    INTEGER NOT NULL,
    next_at    INTEGER NOT NULL DEFAULT 0,
    busy_until INTEGER NOT NULL DEFAULT 0,
    ok_at      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, name, ip)
) STRICT;
CREATE INDEX login_guard_last ON login_guard (last_at);
