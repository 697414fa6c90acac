"""Usage statements and their CSV/XLSX export (being written)."""
