USERS = [{"id": 1, "name": "Alice"}]
