from fastapi import FastAPI
import jwt

app = FastAPI()
