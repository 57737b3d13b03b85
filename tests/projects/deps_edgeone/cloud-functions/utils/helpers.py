def greet(): return "hi"
