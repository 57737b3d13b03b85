from flask import Flask
from utils.helpers import greet
import settings

app = Flask(__name__)
