"""Spillway's shared package: settings, database, storage, datasets and queue helpers."""
