# FaaSET's sleeper: sleeps for request["time"] seconds. Runtime is the
# sleep, whatever the memory; CPU time is next to none.
import time


def sleeper(request, context):
    time.sleep(float(request.get("time", 1)))
    return {"slept": request.get("time", 1)}
