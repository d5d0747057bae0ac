"""Interplay Studio: a local web app to read runs, run head-to-head human studies and talk to a simulator."""
