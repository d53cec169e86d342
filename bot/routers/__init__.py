"""One router per feature, each built by a function (a Router can have only one parent)."""
