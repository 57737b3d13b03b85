print("source")
