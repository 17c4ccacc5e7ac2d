"""Ethernet frames on one interface, below any protocol (AoE's use of it is in ``aoe``).

- ``transport``: ``Transport``, what the target and the client need from a link.
- ``bpf``: ``ByteFilter``, a one-byte test run as a classic BPF program in the kernel.
- ``packet``: ``PacketSocket``, an AF_PACKET socket for one ethertype on one interface.
- ``batch``: batched receive and send (``BatchReceiver``, ``ReplyBuffer``), frame by
  frame over any transport.
- ``mmsg``: the same with ``recvmmsg``/``sendmmsg`` through ctypes, one system call per
  window of frames, and zero-copy sends from file mappings.
"""
