"""The shared runtime kit of ordermesh: settings, server bootstrap, clients and
breakers, telemetry, logging and database helpers. No business rules live here."""
