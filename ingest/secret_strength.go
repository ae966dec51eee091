package ingest

// ShortRaw reports whether s is an unprefixed secret of fewer than 24 bytes.
// Like openai-go, hookbridge uses such a string as the HMAC key as it is, but
// it is weaker than any whsec_ key (which must decode to at least 24 bytes):
// worth a warning, not a refusal, since OpenAI's SDKs accept it.
func (s Secret) ShortRaw() bool {
	return s.kind == kindRaw && len(s.key) < minSecretBytes
}
