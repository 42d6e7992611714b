# The E2B template: the base sandbox image (images/Dockerfile) as E2B's CLI builds it into a
# template (docs/images.md). E2B adds its own init and envd; it ignores the base image's
# ENTRYPOINT, and the template has no start command: the control plane starts `sandboxd run`
# through envd in each new sandbox, with that sandbox's token (docs/e2b.md).
#
# Build the base image first (or push it to a registry and name it here):
#
#   docker build -f images/Dockerfile -t dari-sandbox:latest .
#   cd images/e2b && e2b template build

FROM dari-sandbox:latest

# E2B starts commands as root or as its `user`; sandboxd runs as root, in /workspace.
USER root
WORKDIR /workspace
