"""The warm engine service: PhotoGen's style engine and upscaler as Ray Serve deployments.

Replicas load their models once and keep them; `@serve.batch` gathers requests from many
orders; model multiplexing keeps the styles a replica serves resident. Runs call it over
HTTP (photogen_pipelines/engines/remote.py). Start it with `photogen engines serve`, or as
`engine_service.app:build_app` in a Serve config (deploy/kuberay/rayservice.yaml).
"""
