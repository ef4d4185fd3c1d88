"""The engine: named checks, derived facts, and three-valued evaluation of a policy's criteria tree."""
