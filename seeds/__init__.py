"""Demo dataset for Spillway: schema and deterministic seeding (``python -m seeds.seed``)."""
