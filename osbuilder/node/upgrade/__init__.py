"""Safe OS upgrades on the node: RAUC writes the inactive slot, a bootloader chooser flips the
next boot with limited tries, the health gate blesses the new slot or rolls it back."""
