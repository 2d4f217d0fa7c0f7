"""The SQLite backend: schema, queries, the checkpoint writer process and the plan writer."""
