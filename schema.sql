-- The whole lairchat schema.  Applied at every start, idempotently, under an
-- advisory lock (several nodes may start at once).  Every statement must be
-- safe to run again: CREATE ... IF NOT EXISTS only.  A later change to an
-- existing table goes in a numbered migration guarded by schema_version.

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Accounts -----------------------------------------------------------------

CREATE TABLE IF NOT EXISTS users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL,
    password_hash   text NOT NULL,
    server_role     text NOT NULL DEFAULT 'user' CHECK (server_role IN ('user', 'admin')),
    suspended       boolean NOT NULL DEFAULT false,
    suspend_reason  text NOT NULL DEFAULT '',
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username_lower ON users (lower(username));
-- An ephemeral IRC guest (--irc-guests): no password (it cannot log in), its
-- nick follows IRC's rules; deleted with its memberships when its connection
-- closes, or by housekeeping when its node died.  Idempotent, as every line here.
ALTER TABLE users ADD COLUMN IF NOT EXISTS guest boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS users_guest ON users (id) WHERE guest;

CREATE TABLE IF NOT EXISTS sessions (
    id          bigserial PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL DEFAULT '',
    action      text NOT NULL,
    target      text NOT NULL DEFAULT '',
    outcome     text NOT NULL,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts DESC);

-- Addresses refused by intrusion detection or by an admin, on every node
-- until blocked_until; strikes counts the blocks of the day before, so a
-- returning address is blocked for longer.
CREATE TABLE IF NOT EXISTS address_blocks (
    address       text PRIMARY KEY,
    reason        text NOT NULL,
    blocked_by    text NOT NULL,
    blocked_at    timestamptz NOT NULL DEFAULT now(),
    blocked_until timestamptz NOT NULL,
    strikes       integer NOT NULL DEFAULT 0
);

-- Password guessing (lairchat/login_throttle.py): one row per account (lower
-- case) and address, and one per address across accounts (account '').
-- Instants are epoch milliseconds of the server's clock; 0 is "never".
CREATE TABLE IF NOT EXISTS login_throttle (
    account        text NOT NULL,
    address        text NOT NULL,
    failures       integer NOT NULL DEFAULT 0,
    blocked_until  bigint NOT NULL DEFAULT 0,
    last_attempt   bigint NOT NULL DEFAULT 0,
    refused        integer NOT NULL DEFAULT 0,
    reported_at    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account, address)
);
CREATE INDEX IF NOT EXISTS login_throttle_last_attempt ON login_throttle (last_attempt);

-- Rooms and membership -----------------------------------------------------

-- kind 'room' rooms have a unique name; kind 'direct' rooms are the
-- two-member conversations of direct messages, named by direct_key
-- ("<lower id>:<higher id>") and never listed.
CREATE TABLE IF NOT EXISTS rooms (
    id               bigserial PRIMARY KEY,
    name             text,
    kind             text NOT NULL DEFAULT 'room' CHECK (kind IN ('room', 'direct')),
    privacy          text NOT NULL DEFAULT 'public' CHECK (privacy IN ('public', 'private')),
    topic            text NOT NULL DEFAULT '',
    owner_id         bigint REFERENCES users (id) ON DELETE SET NULL,
    invite_template  text,
    direct_key       text UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'room') = (name IS NOT NULL)),
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS rooms_name_lower ON rooms (lower(name)) WHERE kind = 'room';

CREATE TABLE IF NOT EXISTS room_members (
    room_id       bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          text NOT NULL DEFAULT 'member'
                  CHECK (role IN ('owner', 'admin', 'moderator', 'member', 'guest')),
    joined_at     timestamptz NOT NULL DEFAULT now(),
    last_read_id  bigint NOT NULL DEFAULT 0,
    -- the newest message pushed to the member at login (offline delivery)
    delivered_id  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_members_user ON room_members (user_id, room_id);

CREATE TABLE IF NOT EXISTS room_bans (
    room_id     bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    banned_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    reason      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

-- Messages (rooms and direct messages alike) ------------------------------

CREATE TABLE IF NOT EXISTS messages (
    id          bigserial PRIMARY KEY,
    room_id     bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    sender_id   bigint REFERENCES users (id) ON DELETE SET NULL,
    body        text NOT NULL,
    parent_id   bigint REFERENCES messages (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    edited_at   timestamptz,
    deleted_at  timestamptz,
    search      tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED
);
-- a message sent as an IRC NOTICE (shown as one to IRC clients, as a message to the rest)
ALTER TABLE messages ADD COLUMN IF NOT EXISTS notice boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS messages_room_id ON messages (room_id, id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_parent ON messages (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_search ON messages USING gin (search);

CREATE TABLE IF NOT EXISTS reactions (
    message_id  bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, emoji, user_id)
);

-- Invitations --------------------------------------------------------------

CREATE TABLE IF NOT EXISTS invitations (
    id            bigserial PRIMARY KEY,
    sender_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    recipient_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id       bigint NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    kind          text NOT NULL DEFAULT 'room' CHECK (kind IN ('room', 'admin')),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'accepted', 'declined', 'expired', 'revoked')),
    role          text NOT NULL DEFAULT 'member'
                  CHECK (role IN ('owner', 'admin', 'moderator', 'member', 'guest')),
    message       text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    responded_at  timestamptz,
    reminded_at   timestamptz,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS invitations_recipient_status ON invitations (recipient_id, status);
CREATE INDEX IF NOT EXISTS invitations_sender_status ON invitations (sender_id, status);
CREATE INDEX IF NOT EXISTS invitations_room_status ON invitations (room_id, status);
CREATE INDEX IF NOT EXISTS invitations_pending_expiry ON invitations (expires_at) WHERE status = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS invitations_one_pending
    ON invitations (room_id, recipient_id) WHERE status = 'pending';
-- what the sweep's retention purge reads: answered invitations by age
CREATE INDEX IF NOT EXISTS invitations_answered_at ON invitations (responded_at) WHERE status <> 'pending';

CREATE TABLE IF NOT EXISTS invitation_events (
    id             bigserial PRIMARY KEY,
    invitation_id  bigint NOT NULL REFERENCES invitations (id) ON DELETE CASCADE,
    ts             timestamptz NOT NULL DEFAULT now(),
    status         text NOT NULL,
    actor_id       bigint REFERENCES users (id) ON DELETE SET NULL,
    note           text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS invitation_events_invitation ON invitation_events (invitation_id, id);

-- Events, nodes and presence (several nodes on one database) ---------------

-- Every event, written by the transaction that made its change; every node
-- reads them in seq order (seq order is commit order: writers hold an
-- advisory lock from taking their numbers to their commit).
CREATE TABLE IF NOT EXISTS events (
    seq         bigserial PRIMARY KEY,
    node        text NOT NULL DEFAULT '',
    connection  bigint NOT NULL DEFAULT 0,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The running nodes: a node not seen for a while is taken for dead, and its
-- users for offline; events every node has read are trimmed.
CREATE TABLE IF NOT EXISTS nodes (
    id          text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    acked_seq   bigint NOT NULL DEFAULT 0
);

-- Who has a connection on which node.
CREATE TABLE IF NOT EXISTS online (
    node     text NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    user_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, node)
);
CREATE INDEX IF NOT EXISTS online_node ON online (node);

-- The away text (IRC AWAY) of a user who is online on some node, shown on
-- every node; it goes when they come back, or when they are online nowhere.
CREATE TABLE IF NOT EXISTS away (
    user_id  bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    text     text NOT NULL,
    set_at   timestamptz NOT NULL DEFAULT now()
);

-- Every change of room_members, however it was made (a command, a room or
-- account deleted with its members, an operator's SQL), is recorded as an
-- event when its transaction commits: nodes keep each room's members in
-- memory from these.  Deferred to the commit, so the ordering lock (see
-- lairchat/store/events.py, key 0x1A12EE01) is held only while committing.
CREATE OR REPLACE FUNCTION lairchat_membership_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(437448193);
    IF TG_OP = 'INSERT' THEN
        INSERT INTO events (kind, payload) VALUES ('MemberAdded',
            jsonb_build_object('room', jsonb_build_array(NEW.room_id, '', '[]'::jsonb), 'user_id', NEW.user_id));
    ELSE
        INSERT INTO events (kind, payload) VALUES ('MemberRemoved',
            jsonb_build_object('room', jsonb_build_array(OLD.room_id, '', '[]'::jsonb), 'user_id', OLD.user_id));
    END IF;
    PERFORM pg_notify('lairchat_events', '');
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'room_members_events') THEN
        CREATE CONSTRAINT TRIGGER room_members_events AFTER INSERT OR DELETE ON room_members
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lairchat_membership_event();
    END IF;
END
$$;

-- New messages, many at once, in one statement and one commit (the group
-- commit of lairchat/store/messages.py): each is stored only if its sender
-- is a member whose role may send (and, for a reply, its thread's root is
-- an undeleted message of the room), and its event is recorded with it,
-- its message_id and ts filled in, and the batch's token and the item's
-- place in it (batch, n: what finds them should the connection be lost).
-- Each item names its room by id (p_rooms; p_room_ids: the distinct ones);
-- a room message also by its lower-cased name (p_names; NULL for a reply or
-- a direct message).  Should one of the rooms named by id be gone, a room
-- message to it goes to the room that has its name now (one deleted and
-- created again under that name, perhaps on another node), so that a
-- sender's messages never have to be sent again and keep their order; its
-- event then names that room.  Ids are never reused and rooms never
-- renamed, so a room that is still there is the one with that name.
-- Its notification carries the events themselves when they fit (see
-- lairchat/bus.py): the other nodes then hand them on without a read.  A
-- node alone (no other node registered) is not notified at all: nothing
-- would read the notification but the node itself, which hands its own
-- commits on, and each one woke its listening connection and the server
-- for nothing.  A starting node registers and reads where the log ends
-- under the ordering lock (lairchat/store/events.py, join_at_end), so
-- every batch after that end sees it registered; a node taken for dead
-- while it still runs reads these batches with its poll until it
-- registers again.
-- (A node of the previous release takes the line break and the events for
-- part of the node id, so it reads its own batches back from the log while
-- nodes are replaced: slower, never wrong.)
-- A function, so that its statements are planned once per connection.
-- The rooms and the senders are locked first (as the foreign keys would),
-- the ordering lock last: a transaction deleting one of these rooms or
-- senders (a guest whose connection closed) takes that lock as it commits,
-- so this one must not hold it while it waits for that row.  A message
-- whose sender went meanwhile is then refused (no longer a member's).
-- (The previous release's function, with 15 arguments, is left in place:
-- its nodes still call it while they are replaced one by one.)
CREATE OR REPLACE FUNCTION lairchat_post_messages(
    p_room_ids bigint[], p_rooms bigint[], p_names text[], p_senders bigint[], p_bodies text[], p_parents bigint[],
    p_notices boolean[], p_kinds text[], p_payloads text[], p_nodes text[], p_connections bigint[],
    p_roles text[], p_batch text, p_lock bigint, p_channel text, p_node text)
RETURNS TABLE (n bigint, id bigint, created_at timestamptz, seq bigint, room_id bigint, room_name text)
LANGUAGE plpgsql
-- one plan for every batch: a plan made for each batch's values costs
-- more than the batch itself (0.5 ms against 1.6 ms for one message)
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    last_seq bigint;
    found_rooms bigint;
    targets bigint[] := p_rooms;
    item text;
    items text[] := '{}';
    size integer := 0;
    others boolean;
    header text;
    inline text;
BEGIN
    PERFORM 1 FROM rooms WHERE rooms.id = ANY(p_room_ids) FOR KEY SHARE;
    GET DIAGNOSTICS found_rooms = ROW_COUNT;
    IF found_rooms < cardinality(p_room_ids) THEN
        -- a room is gone: a message to it goes to the room of its name now, if any
        targets := ARRAY(
            SELECT CASE WHEN t.name IS NULL OR EXISTS (SELECT 1 FROM rooms r WHERE r.id = t.room_id) THEN t.room_id
                        ELSE (SELECT r.id FROM rooms r WHERE r.kind = 'room' AND lower(r.name) = t.name) END
            FROM unnest(p_rooms, p_names) WITH ORDINALITY AS t(room_id, name, n) ORDER BY t.n);
        PERFORM 1 FROM rooms WHERE rooms.id = ANY(targets) FOR KEY SHARE;
    END IF;
    PERFORM 1 FROM users WHERE users.id = ANY(p_senders) ORDER BY users.id FOR KEY SHARE;
    PERFORM pg_advisory_xact_lock(p_lock);
    others := EXISTS (SELECT 1 FROM nodes WHERE nodes.id <> p_node);
    FOR n, id, created_at, seq, room_id, room_name, item IN
        WITH input AS (
          SELECT * FROM unnest(targets, p_rooms, p_senders, p_bodies, p_parents, p_notices, p_kinds, p_payloads,
                               p_nodes, p_connections)
          WITH ORDINALITY AS t(room_id, asked_room, sender_id, body, parent_id, notice, kind, payload, node,
                               connection, n)
        ), allowed AS (
          SELECT i.*, r.name AS room_name FROM input i
          JOIN rooms r ON r.id = i.room_id
          JOIN room_members me ON me.room_id = i.room_id AND me.user_id = i.sender_id AND me.role = ANY(p_roles)
          WHERE i.parent_id IS NULL OR EXISTS (
            SELECT 1 FROM messages p WHERE p.id = i.parent_id AND p.room_id = i.room_id AND p.deleted_at IS NULL)
        ), ok AS (
          -- ids in the batch's order (a join yields its rows in any order)
          SELECT a.*, nextval('messages_id_seq') AS id FROM (SELECT * FROM allowed ORDER BY n) a
        ), m AS (
          INSERT INTO messages (id, room_id, sender_id, body, parent_id, notice)
          SELECT id, room_id, sender_id, body, parent_id, notice FROM ok ORDER BY n RETURNING id, created_at
        ), ev AS (
          INSERT INTO events (node, connection, kind, payload)
          SELECT ok.node, ok.connection, ok.kind, CASE WHEN ok.room_id = ok.asked_room THEN e.payload
            ELSE e.payload || jsonb_build_object('room', jsonb_build_array(ok.room_id, ok.room_name, '[]'::jsonb)) END
          FROM ok JOIN m ON m.id = ok.id,
          LATERAL (SELECT ok.payload::jsonb || jsonb_build_object(
            'message_id', m.id, 'ts', floor(extract(epoch FROM m.created_at) * 1000)::bigint,
            'batch', p_batch, 'n', ok.n) AS payload) e
          ORDER BY ok.n
          RETURNING seq, (payload->>'message_id')::bigint AS message_id,
                    CASE WHEN others THEN json_build_array(seq, node, connection, kind, payload)::text END AS item
        )
        SELECT ok.n, m.id, m.created_at, ev.seq, ok.room_id, ok.room_name, ev.item
        FROM ok JOIN m ON m.id = ok.id JOIN ev ON ev.message_id = m.id ORDER BY ev.seq
    LOOP
        last_seq := seq;
        IF others AND size < 8000 THEN
            items := array_append(items, item);
            size := size + octet_length(item) + 1;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF last_seq IS NOT NULL AND others THEN
        -- the notification carries the events themselves when they fit
        -- (a payload is less than 8000 bytes), after a line break
        header := last_seq::text || ' ' || p_node;
        inline := array_to_string(items, ',');
        IF size < 8000 AND octet_length(header) + octet_length(inline) + 3 < 8000 THEN
            header := header || E'\n[' || inline || ']';
        END IF;
        PERFORM pg_notify(p_channel, header);
    END IF;
END
$$;

INSERT INTO schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;
