from flask import Flask
import dateutil.parser
import yaml

app = Flask(__name__)
