/// <reference path="../pb_data/types.d.ts" />

// Forwards every record change of this PocketBase app to ringcast's publish API, so ringcast
// can deliver it to realtime subscribers in PocketBase's place.
//
// Install: copy this file AND the ringcast/ folder next to it into your pb_hooks directory.
// Environment (read by the PocketBase process):
//   RINGCAST_URL                      ringcast's base URL, e.g. http://127.0.0.1:8091 (required;
//                                     without it nothing is forwarded and an error is logged)
//   RINGCAST_TOKEN                    sent as `Authorization: Bearer <token>` (ringcast's
//                                     --admin-token); omitted when unset
//   RINGCAST_AUDIENCE_<COLLECTION>    audience for a collection whose list rule is not one of
//                                     the recognised shapes (see ringcast/forwarder.js)
//   RINGCAST_TIMEOUT                  seconds per attempt (default 2)
//   RINGCAST_SEND_HIDDEN              "false": hidden fields' values are not sent (ringcast would
//                                     deliver them to superusers only, as PocketBase does)
//
// The "after success" hooks run once the change is committed, so a rolled-back write is never
// published. They run synchronously in the request that made the change: a failing ringcast
// delays that request by at most 3 attempts × RINGCAST_TIMEOUT + 400 ms, and never fails it.
//
// pb_hooks handlers run in isolated VM contexts (top-level code of this file is not visible
// inside them), hence the shared code lives in a module that each handler require()s.

onRecordAfterCreateSuccess((e) => {
    e.next();
    require(`${__hooks}/ringcast/forwarder.js`).forward(e.record, "create");
});

onRecordAfterUpdateSuccess((e) => {
    e.next();
    require(`${__hooks}/ringcast/forwarder.js`).forward(e.record, "update");
});

onRecordAfterDeleteSuccess((e) => {
    e.next();
    require(`${__hooks}/ringcast/forwarder.js`).forward(e.record, "delete");
});
