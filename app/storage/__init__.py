"""Storage: SQLModel tables and the repositories over them. Nothing above this package writes SQL."""
