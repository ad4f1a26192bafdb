"""gRPC stubs generated from Protos/ by python/generate_stubs.py."""
