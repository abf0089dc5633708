"""Retention: how long each class of a wearer's data is kept after their monitoring ends (`rules`), the
legal holds that suspend erasure (`holds`), and what is due when (`plan`)."""
