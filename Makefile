# Thin wrappers around tools/run, the real entry point (a fresh machine may lack make).
# Extra arguments: make units ARGS="-k parser"
ARGS ?=

.PHONY: help audit test units sanity integration lint build clean

help audit test units sanity integration lint build clean:
	tools/run $@ $(ARGS)
