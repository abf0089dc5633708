"""The simulator: synthetic wearers, behaviour and bad rows (`tagtrail simulate`)."""
