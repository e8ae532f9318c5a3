"""Services: the rules of Cruddur, between thin routes and the store."""
