#!/bin/sh
# The bash template's entry: runs the handler in the function folder as
# this same shell (sourced, so no second shell starts per call).
# handler.sh is ours; fn.sh is tinyFaaS's binary-function shape.
cd function || exit 1
if [ -f fn.sh ]; then
    # shellcheck source=/dev/null
    . ./fn.sh
else
    # shellcheck source=/dev/null
    . ./handler.sh
fi
