"""The policies Steward is governed by: YAML files, their JSON Schemas, and the engines that
evaluate them. A policy that does not match its schema stops start-up with a message naming the
file and the problem."""
