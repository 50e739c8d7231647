"""What the layers above share and that is no business rule: settings from the
environment, encryption of payloads and personal fields (and the data converter), logging,
the holiday calendar's source, the error types of the contract and sending a command to a
case; and the codec server, a small service over the encryption."""
