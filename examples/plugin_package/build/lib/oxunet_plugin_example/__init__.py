"""Example oxunet plugin: a custom network and a custom loss (see README.md)."""
