"""Imports every command module so that each registers with the app."""
