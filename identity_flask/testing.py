"""Test helpers for apps that use identity_flask (a pytest plugin)."""
