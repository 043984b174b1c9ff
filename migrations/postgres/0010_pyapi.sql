-- 0010: the PyBitmessage-compatible XML-RPC API (gateway/pyapi). api_ref
-- is the PyBitmessage-style ackdata sendMessage/sendBroadcast handed back
-- (made when the row is queued, never changed by the pipeline, which may
-- make or clear ack_data later); trashed hides a row from the API's sent
-- lists (trashSentMessage), as PyBitmessage's folder='trash'.
ALTER TABLE outbox ADD COLUMN api_ref BYTEA;
ALTER TABLE outbox ADD COLUMN trashed BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX outbox_api_ref ON outbox (api_ref) WHERE api_ref IS NOT NULL;
