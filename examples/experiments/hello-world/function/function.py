# FaaSET's first notebook function: say hello. Its runtime is the platform's
# floor: the warm runner's dispatch and the watchdog's hop.


def hello_world(request, context):
    return {"message": "Hello " + str(request.get("name", "world")) + "!"}
