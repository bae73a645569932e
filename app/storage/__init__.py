"""Storage: SQLModel tables and repositories over them. Nothing above it writes SQL."""
