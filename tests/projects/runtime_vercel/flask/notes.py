# A folder named like the flask package (no __init__.py): `import flask` must still be Flask.
NOTE = "user folder"
