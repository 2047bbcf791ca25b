#!/bin/sh
# Your program: the request body is on stdin, the answer goes to stdout.
name=$(cat)
echo "Hello, ${name:-world}!"
