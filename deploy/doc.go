// Package deploy holds hookbridge's deployment files (the Kubernetes
// kustomization with its examples and monitoring component, the Prometheus
// alert rules) and, in its tests, their checks: every kustomization built
// offline and its objects decoded strictly with the Kubernetes and Prometheus
// Operator API types, the alert rules' unit tests (promtool's format), and
// the compose file. It is a separate module so that these dependencies stay
// out of hookbridge's own go.mod.
package deploy
