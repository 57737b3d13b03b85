GREETING = "not a route"
