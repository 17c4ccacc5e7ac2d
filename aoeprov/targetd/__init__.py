"""The built-in AoE target: one process serving many exports on many interfaces.

- ``config``: the export list (``ExportConfig``) and its JSON file format.
- ``export``: an open backing store plus the state AoE peers can change.
- ``protocol``: the protocol rules (``TargetProtocol``), request bytes in and response bytes out.
- ``batch``: the fast path for reads and writes, same answers, less per frame;
  ``uniform`` serves whole batches of bulk reads or writes, ``mapping`` lets read
  replies go out straight from the backing store's page cache.
- ``server``: links, the event loop, reload on SIGHUP, counters, clean stop.

Write durability (``write_mode``). The Linux initiator never sends FLUSH CACHE
and treats an AoE disk as write-through: its ``fsync`` returns as soon as the
write responses arrive. What "written" means is therefore decided here:

- ``sync``: a write is answered only after ``fdatasync`` on the backing file or
  device has returned (one ``fdatasync`` covers every write of a receive batch).
  An acknowledged write survives a crash or power loss of the target host, as
  far as the storage below honours flushes. This is the spec's default.
- ``writeback``: a write is answered once it is in the target's page cache. A
  crash of the target *process* loses nothing (the kernel still holds the
  data), but a crash or power loss of the target *host* can lose writes the
  initiator was told were done, and so corrupt its filesystem. Faster; vblade's
  default (without ``-s``). Exports are fsynced when the target stops cleanly.
"""
