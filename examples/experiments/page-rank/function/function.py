# FaaSET's page_rank function, without igraph: PageRank by power iteration
# over the same graph igraph.Graph.Tree(size, 10) builds (node i's parent
# is (i - 1) // 10; undirected), `loops` times. Pure Python, so the
# experiment's sizes are a 25th of FaaSET's.


def page_rank(request, context):
    size = int(request.get("size", 1000))
    loops = int(request.get("loops", 1))
    neighbours = [[] for _ in range(size)]
    for child in range(1, size):
        parent = (child - 1) // 10
        neighbours[child].append(parent)
        neighbours[parent].append(child)
    damping = 0.85
    rank = []
    for _ in range(loops):
        rank = [1.0 / size] * size
        for _ in range(30):
            share = [rank[i] / len(neighbours[i]) for i in range(size)]
            base = (1.0 - damping) / size
            rank = [base + damping * sum(share[j] for j in neighbours[i]) for i in range(size)]
    top = max(range(size), key=lambda i: rank[i])
    return {"size": size, "loops": loops, "top": top, "rank": rank[top]}
