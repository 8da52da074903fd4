-- devext store, version 2: the device lookup index. A plugin's manifest names the properties of
-- its device configuration that identify a device in its service (`lookup_fields`, e.g. a SIM's
-- ICCID); one device at most of an organisation has a given value of such a field.
--
-- SQL cannot know which fields those are (plugins are loaded at run time), so nothing is
-- backfilled here: the service writes a device's entries in the transaction that writes the
-- device, and at start-up rebuilds the index of all devices whenever the loaded plugins' lookup
-- fields differ from the ones it was last built for (`meta.lookup_signature`; absent after
-- this migration, so the first start-up indexes the devices written before).

CREATE TABLE device_lookup (
    org_id    INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    plugin    TEXT NOT NULL,
    field     TEXT NOT NULL,
    -- A JSON string as it is; any other JSON value as its JSON text.
    value     TEXT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    UNIQUE (org_id, plugin, field, value)
);
CREATE INDEX device_lookup_device ON device_lookup(device_id);
