#!/bin/sh
# A shell function: the request body is on stdin, the answer goes to
# stdout. A non-zero exit answers 500 with stderr. Request details are in
# Http_Method, Http_Path, Http_Query and Http_<Header> variables.
name=$(cat)
echo "Hello, ${name:-world}!"
