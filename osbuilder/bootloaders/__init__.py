"""Bootloader adapters. Each module offers `stage_boot_files(ctx)` for the build; the
node-side half (set_next, current_slot, mark_good) arrives with the upgrade work."""
