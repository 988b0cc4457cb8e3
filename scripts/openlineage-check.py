"""Checks `assetfs lineage --format openlineage` output against the OpenLineage client's event models."""
import json
import sys

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.serde import Serde



def strip_empty_facets(value):
    """The client adds `facets: {}` (and `inputFacets`/`outputFacets`) where assetfs writes none."""
    if isinstance(value, dict):
        return {k: strip_empty_facets(v) for k, v in value.items() if not (k.endswith("acets") and v == {})}
    if isinstance(value, list):
        return [strip_empty_facets(v) for v in value]
    return value


events = 0
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    d = json.loads(line)
    event = RunEvent(
        eventType=RunState[d["eventType"]],
        eventTime=d["eventTime"],
        run=Run(runId=d["run"]["runId"]),
        job=Job(namespace=d["job"]["namespace"], name=d["job"]["name"]),
        producer=d["producer"],
        inputs=[InputDataset(namespace=i["namespace"], name=i["name"]) for i in d["inputs"]],
        outputs=[OutputDataset(namespace=o["namespace"], name=o["name"]) for o in d["outputs"]],
    )
    back = strip_empty_facets(json.loads(Serde.to_json(event)))
    for key in ("eventType", "eventTime", "producer", "schemaURL", "run", "job", "inputs", "outputs"):
        if back.get(key) != d.get(key):
            sys.exit(f"event {events}: {key} is {d.get(key)!r} in assetfs's output, {back.get(key)!r} once read by the client")
    events += 1
print(events)
