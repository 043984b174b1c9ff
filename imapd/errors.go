package imapd

import (
	"context"
	"errors"
	"log/slog"

	"github.com/emersion/go-imap/v2"

	"github.com/bmgate/bmgate/mailmap"
)

// Client-facing errors that do not come from the store. Their text is fixed
// and generic; nothing from Go or SQL reaches a client.
var (
	errReadOnly = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeCannot,
		Text: "Mailbox is read-only (EXAMINE)",
	}
	errTooManyUserConns = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeUnavailable,
		Text: "Too many connections for this user",
	}
	errTooManyIPConns = &imap.Error{
		Type: imap.StatusResponseTypeBye,
		Code: imap.ResponseCodeUnavailable,
		Text: "Too many connections from your address",
	}
	errShuttingDown = &imap.Error{
		Type: imap.StatusResponseTypeBye,
		Code: imap.ResponseCodeUnavailable,
		Text: "Server shutting down",
	}
	errLoginShuttingDown = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeUnavailable,
		Text: "Server shutting down",
	}
	errAccountGone = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeUnavailable,
		Text: "Account disabled",
	}
	errAuthFailed = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeAuthenticationFailed,
		Text: "Authentication failed",
	}
	errLoginLocked = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeUnavailable,
		Text: "Too many failed logins, try again later",
	}
	errAuthBusy = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeUnavailable,
		Text: "Server busy, try again later",
	}
	errNoMechanism = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Text: "SASL mechanism not supported",
	}
	errIdentity = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeAuthorizationFailed,
		Text: "SASL identity not supported",
	}
	errEmptyMessage = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeCannot,
		Text: "Cannot store an empty message",
	}
	errInvalidName = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeCannot,
		Text: "Invalid mailbox name",
	}
	errInvalidFlag = &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeCannot,
		Text: "Invalid flag",
	}
)

// mapError turns an error from the store into the IMAP answer a client should see. It is the only place that does
// so: store sentinels get their RFC 5530 response codes, anything else is
// logged with its detail and answered with a generic NO [SERVERBUG], so Go
// error strings and SQL text never reach the wire. Errors that already are
// *imap.Error pass through unchanged.
//
// op names the command for the log ("APPEND", "RENAME"...). notFoundCode is
// the code for ErrNotFound: TRYCREATE where the missing mailbox is a
// destination (RFC 9051 §6.3.12, §6.4.7), NONEXISTENT ("") otherwise.
func mapError(log *slog.Logger, op string, err error, notFoundCode imap.ResponseCode) error {
	if err == nil {
		return nil
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) {
		return imapErr
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, mailmap.ErrNotFound):
		if notFoundCode == "" {
			notFoundCode = imap.ResponseCodeNonExistent
		}
		return no(notFoundCode, "No such mailbox")
	case errors.Is(err, mailmap.ErrExists):
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, mailmap.ErrOverQuota):
		return no(imap.ResponseCodeOverQuota, "Quota exceeded")
	case errors.Is(err, mailmap.ErrProtected):
		return no(imap.ResponseCodeCannot, "This mailbox cannot be deleted or renamed")
	case errors.Is(err, mailmap.ErrInvalidName):
		if op == "STORE" || op == "APPEND" {
			return errInvalidFlag
		}
		return errInvalidName
	case errors.Is(err, mailmap.ErrHasChildren):
		return no(imap.ResponseCodeHasChildren, "Mailbox has children, delete them first")
	case errors.Is(err, mailmap.ErrAuthFailed):
		return errAuthFailed
	case errors.Is(err, mailmap.ErrDisabled):
		return no(imap.ResponseCodeContactAdmin, "Account disabled")
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("imap command timed out", "op", op, "err", err)
		return no(imap.ResponseCodeUnavailable, "Server busy, try again later")
	}
	log.Error("imap command failed", "op", op, "err", err)
	return no(imap.ResponseCodeServerBug, "Internal error, see server log")
}
