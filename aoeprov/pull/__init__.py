"""``aoeprov pull``: follow a config repo (GitOps), as ``ansible-pull`` does for playbooks.

One run: fetch the repo into a private mirror, check the commit's tree out into a
new directory, validate and plan the spec in it, and only then make it the
current spec (an atomic symlink swap) and, in apply mode, apply it. A commit that
fails is recorded and never applied; the host keeps converging on the last good
one. Everything lives in one state directory (``/var/lib/aoeprov/pull``):

- ``mirror.git/``: bare mirror the repo is fetched into
- ``trees/<commit>/``: checked-out trees, each renamed into place only when complete
- ``current``: symlink to the tree of the last good commit
- ``state.json``: the record ``aoeprov pull --status`` prints
"""
