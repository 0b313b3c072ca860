"""The manual (these pages), installed with the toolkit as package data:
every command's --docs prints its page wherever it is installed."""
