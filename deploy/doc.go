// Package deploy holds hookbridge's deployment files (Kubernetes manifests,
// Prometheus rules) and, in its tests, their validation against the
// Kubernetes API types. It is a separate module so that the Kubernetes
// dependencies stay out of hookbridge's own go.mod.
package deploy
