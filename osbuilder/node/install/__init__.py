"""`osbuilder-agent install`: from a live boot (ISO, USB stick, PXE) onto a disk, with the
A/B layout of a built disk image. Modules: plan (what the build recorded), disks (which
disks there are and which may be written), prompts (the console installer), target
(partition and write), main (the command)."""
